"""The `cnnkit` command line (also `python -m cnnkit`).

    cnnkit train [--model lenet|mlp] [--epochs N] [--data digits|mnist:DIR|cifar10:DIR]
                 [--seed S] [--threads N] [--batch-size B] [--lr LR] [--limit N] [--save PATH]
                 [--device cpu|cuda|cuda:N] [--augment]
    cnnkit bench [--quick] [--threads N] [--device cpu|cuda|cuda:N]
    cnnkit classify [--method knn|softmax|svm|kmeans] [--k K] [--data ...] [--seed S]
                    [--threads N] [--epochs N] [--lr LR] [--reg R] [--limit N]

`cnnkit train` with no arguments trains LeNet-5 on scikit-learn's bundled digits and
ends with a line giving the test accuracy. Progress (and where --save wrote the
weights) goes to stderr, the result to stdout. Under `mpiexec -n P` it trains
data-parallel (cnnkit.distributed): the --batch-size samples of each step are split
over the P ranks, and only rank 0 prints and saves. In DIR and PATH, `~` and environment
variables are expanded, also where the shell did not (`--data=mnist:~/data`).
"""

import argparse
import importlib
import os
import sys
import time

import numpy as np

from . import _device

MODELS = ("lenet", "mlp")
CLASSIC_METHODS = ("knn", "softmax", "svm", "kmeans")


class CommandError(Exception):
    """A problem with the user's input found after parsing (a missing dataset directory,
    scikit-learn not installed): reported in one line with exit status 1."""

BAR_WIDTH = 30


def _expand(path):
    return os.path.expandvars(os.path.expanduser(path))


def _data_spec(value):
    name, sep, root = value.partition(":")
    if name == "digits" and not sep:
        return value
    if name in ("mnist", "cifar10") and root:
        return f"{name}:{_expand(root)}"
    raise argparse.ArgumentTypeError(f"unknown dataset {value!r} (choose digits, mnist:DIR or cifar10:DIR)")


def _positive_int(value):
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _positive_float(value):
    try:
        v = float(value)
    except ValueError:
        v = 0.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v


def _device_arg(value):
    try:
        _device.parse_device(value, "--device")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {value!r}") from None
    return value


def _use_device(device):
    """(kind, index) of a --device value, once the device is known to run here."""
    try:
        return _device.require(device, "--device")
    except (RuntimeError, ValueError) as e:
        raise CommandError(str(e)) from None


def build_parser():
    """The argparse parser of the `cnnkit` command (subcommands train and bench).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="cnnkit", description="cnnkit: CNN kernels with a NumPy API.")
    sub = parser.add_subparsers(dest="command", metavar="{train,bench,classify}")
    sub.required = True

    train = sub.add_parser("train", help="train a network and report its test accuracy")
    train.add_argument("--model", choices=MODELS, default="lenet", help="network (default: lenet)")
    train.add_argument("--epochs", type=_positive_int, default=15, help="epochs (default: 15)")
    train.add_argument(
        "--data",
        type=_data_spec,
        default="digits",
        metavar="{digits,mnist:DIR,cifar10:DIR}",
        help="dataset (default: digits, scikit-learn's bundled 8x8 digits)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--threads", type=_positive_int, default=None, help="kernel threads (default: all cores)")
    train.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default: 32)")
    train.add_argument("--lr", type=_positive_float, default=0.02, help="SGD learning rate (default: 0.02)")
    train.add_argument("--limit", type=_positive_int, default=None, help="train on the first N samples only")
    train.add_argument(
        "--save", metavar="PATH", type=_expand, default=None, help="save the trained weights to an .npz file"
    )
    train.add_argument("--device", type=_device_arg, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument(
        "--augment", action="store_true",
        help="cifar10 only: random 32x32 crops of the 4-padded images, random flips and CIFAR-10's mean/std "
        "(cnnkit.data.augment, on the DataLoader's background thread)",
    )

    bench = sub.add_parser("bench", help="print the kernel benchmark table")
    bench.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    bench.add_argument(
        "--threads", type=_positive_int, default=None, help="threads for cnnkit and torch (default: cnnkit.bench's)"
    )
    bench.add_argument(
        "--device", type=_device_arg, default="cpu", help="cpu, or cuda[:N]: against torch on CUDA (default: cpu)"
    )

    classify = sub.add_parser("classify", help="a classic method (cnnkit.classic) on flattened images")
    classify.add_argument("--method", choices=CLASSIC_METHODS, default="knn", help="method (default: knn)")
    classify.add_argument(
        "--k", type=_positive_int, default=None,
        help="knn: neighbours (default: chosen by 5-fold cross-validation); kmeans: clusters (default: classes)",
    )
    classify.add_argument("--data", type=_data_spec, default="digits", metavar="{digits,mnist:DIR,cifar10:DIR}",
                          help="dataset (default: digits)")
    classify.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    classify.add_argument("--threads", type=_positive_int, default=None, help="kernel threads (default: all cores)")
    classify.add_argument("--epochs", type=_positive_int, default=50, help="softmax/svm: SGD epochs (default: 50)")
    classify.add_argument("--lr", type=_positive_float, default=0.1, help="softmax/svm: learning rate (default: 0.1)")
    classify.add_argument("--reg", type=float, default=1e-4, help="softmax/svm: L2 regularisation (default: 1e-4)")
    classify.add_argument("--limit", type=_positive_int, default=None, help="train on the first N samples only")
    return parser


def classify(args, out=None):
    """Run `cnnkit classify`: fit a classic method and print one result line to out.

    Parameters
    ----------
    args : argparse.Namespace
        As build_parser() parses `classify ...`.
    out : file, optional
        Default sys.stdout.

    Returns
    -------
    int
        0.

    Raises
    ------
    CommandError
        If the dataset cannot be loaded, or --k is larger than the training set.
    """
    import cnnkit
    from . import classic, data

    out = out or sys.stdout
    if args.threads is not None:
        cnnkit.set_num_threads(args.threads)
    try:
        ds = data.load_dataset(args.data)
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(f"cannot load {args.data!r}: {e}") from None
    x_train, y_train = ds.x_train.reshape(len(ds.x_train), -1), ds.y_train
    x_test = ds.x_test.reshape(len(ds.x_test), -1)
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    if args.k is not None and args.k > len(x_train):
        raise CommandError(f"--k {args.k} is more than the {len(x_train)} training samples")
    start = time.perf_counter()
    if args.method == "kmeans":
        k = args.k or ds.num_classes
        model = classic.KMeans(n_clusters=k, n_init=3, seed=args.seed).fit(x_train)
        # Each cluster predicts its most common training label.
        votes = np.zeros((k, int(y_train.max()) + 1), dtype=np.int64)
        np.add.at(votes, (model.labels_, y_train), 1)
        correct = int(np.sum(np.argmax(votes, axis=1)[model.predict(x_test)] == ds.y_test))
        out.write(
            f"inertia: {model.inertia_:.2f}, kmeans (k={k}) on {ds.name}, {model.n_iter_} iterations; "
            f"test accuracy of the clusters' majority labels: {100 * correct / len(x_test):.2f}%, "
            f"{time.perf_counter() - start:.2f} s\n"
        )
        return 0
    if args.method == "knn":
        k = args.k
        if k is None:
            candidates = [c for c in (1, 3, 5, 7, 9) if c <= len(x_train) * 4 // 5]
            cv = [classic.cross_val_score(classic.KNearestNeighbors(c), x_train, y_train, folds=5, seed=args.seed).mean()
                  for c in candidates]
            k = candidates[int(np.argmax(cv))]
        model, name = classic.KNearestNeighbors(n_neighbors=k), f"knn (k={k})"
    else:
        # Standardised features: SGD's step suits every feature alike.
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + np.float32(1e-6)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        cls = classic.LinearSoftmax if args.method == "softmax" else classic.LinearSVM
        model = cls(reg=args.reg, learning_rate=args.lr, epochs=args.epochs, seed=args.seed)
        name = f"{args.method} ({args.epochs} epochs)"
    correct = int(np.sum(model.fit(x_train, y_train).predict(x_test) == ds.y_test))
    out.write(
        f"test accuracy: {100 * correct / len(x_test):.2f}% ({correct}/{len(x_test)}), {name} on {ds.name}, "
        f"{time.perf_counter() - start:.2f} s\n"
    )
    return 0


def _build_model(name, shape, num_classes):
    from . import models

    channels, size = shape[0], shape[1]
    if name == "lenet":
        # Inputs smaller than LeNet's 32x32 keep their size through each 5x5 conv.
        return models.LeNet5(num_classes, in_channels=channels, input_size=size, padding=0 if size >= 32 else 2)
    return models.MLP(int(np.prod(shape)), hidden=(128,), out_features=num_classes)


class _Discard:
    """Where the output of ranks other than 0 goes."""

    def write(self, text):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False


class _Progress:
    """A text progress bar on stderr: redrawn in place on a terminal, and printed once
    per epoch (complete, with the epoch's loss, accuracy and time) everywhere."""

    def __init__(self, epochs, batches, stream):
        self.epochs, self.batches, self.stream = epochs, batches, stream
        self.live = stream.isatty()

    def _bar(self, epoch, done, loss):
        filled = BAR_WIDTH * done // self.batches
        width = len(str(self.epochs))
        return (
            f"epoch {epoch:>{width}}/{self.epochs} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{done}/{self.batches} loss {loss:.4f}"
        )

    def update(self, epoch, done, loss):
        if self.live:
            self.stream.write("\r" + self._bar(epoch, done, loss))
            self.stream.flush()

    def end_epoch(self, epoch, loss, accuracy, seconds):
        line = f"{self._bar(epoch, self.batches, loss)} train acc {100 * accuracy:.2f}% {seconds:.2f} s"
        self.stream.write(("\r" if self.live else "") + line + "\n")
        self.stream.flush()


def _correct(logits, y):
    """How many rows of logits have their largest entry at y (on logits' device)."""
    xp = _device.array_module(logits)
    return int((xp.argmax(logits, axis=1) == y).sum())


def _accuracy(model, x, y, device, batch_size=256):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = (_device.to_device(a[i : i + batch_size], *device) for a in (x, y))
        correct += _correct(model(xb), yb)
    model.train()
    return correct


def train(args, out=None, err=None):
    """Run `cnnkit train`: train, print progress to err and the test accuracy to out.

    Parameters
    ----------
    args : argparse.Namespace
        As build_parser() parses `train ...`.
    out, err : file, optional
        Default sys.stdout and sys.stderr.

    Returns
    -------
    int
        0.

    Raises
    ------
    CommandError
        If the device is not there, the dataset cannot be loaded, --augment is given
        without cifar10 data, or the weights cannot be saved.
    """
    import cnnkit
    from . import data, distributed, nn, optim

    out = out or sys.stdout
    err = err or sys.stderr
    device = _use_device(args.device)
    comm = distributed.init()
    if comm.size > 1 and device[0] != "cpu":
        raise CommandError(f"--device {args.device}: data-parallel training (mpiexec) runs on the CPU")
    if comm.rank != 0:
        out = err = _Discard()
    if args.threads is not None:
        cnnkit.set_num_threads(args.threads)
    cnnkit.manual_seed(args.seed)
    if args.augment and not args.data.startswith("cifar10:"):
        raise CommandError(f"--augment is for --data cifar10:DIR, got --data {args.data}")
    try:
        if args.augment:  # uint8 training images: augment takes the raw pixels
            root = args.data.partition(":")[2]
            ds = data.Dataset("cifar10", *data.load_cifar10(root, True, np.uint8), *data.load_cifar10(root, False),
                              num_classes=10)
        else:
            ds = data.load_dataset(args.data)
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(f"cannot load {args.data!r}: {e}") from None
    x_train, y_train = ds.x_train, ds.y_train
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    transform = None
    if args.augment:
        # Seeds from a generator of the loader's thread's own, so that prefetching
        # draws nothing from cnnkit's stream (the training thread's).
        seeds = np.random.default_rng(args.seed)
        transform = lambda xb: data.augment(  # noqa: E731
            xb, 32, padding=4, flip=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD,
            seed=int(seeds.integers(2**63)),
        )
        mean = np.array(data.CIFAR10_MEAN, np.float32).reshape(1, 3, 1, 1)
        std = np.array(data.CIFAR10_STD, np.float32).reshape(1, 3, 1, 1)
    else:
        # Standardise each channel with the training set's statistics.
        mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
        std = x_train.std(axis=(0, 2, 3), keepdims=True) + np.float32(1e-6)
        x_train = (x_train - mean) / std
    x_test = (ds.x_test - mean) / std

    model = _build_model(args.model, x_train.shape[1:], ds.num_classes).to(args.device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    schedule = optim.StepLR(optimizer, step_size=max(1, 2 * args.epochs // 3), gamma=0.1)
    loader = data.DataLoader((x_train, y_train), batch_size=args.batch_size, shuffle=True, seed=args.seed,
                             transform=transform, rank=comm.rank, world_size=comm.size)
    net = distributed.DataParallel(model, comm) if comm.size > 1 else model
    progress = _Progress(args.epochs, len(loader), err)
    err.write(
        f"training {args.model} on {ds.name}{' (augmented)' if args.augment else ''}: "
        f"{len(x_train)} train / {len(x_test)} test samples, "
        f"{model.num_parameters():,} parameters, "
        + (f"{cnnkit.get_num_threads()} threads" if device[0] == "cpu" else f"on {args.device}")
        + (f" on each of {comm.size} ranks\n" if comm.size > 1 else "\n")
    )
    epoch_times = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        for done, batch in enumerate(loader, 1):
            xb, yb = (_device.to_device(a, *device) for a in batch)
            model.zero_grad()
            logits = net(xb)
            loss = criterion(logits, yb)
            net.backward(criterion.backward())
            optimizer.step()
            total_loss += loss * len(xb) if len(xb) else 0.0  # a rank's empty part has a NaN loss
            correct += _correct(logits, yb)
            seen += len(xb)
            progress.update(epoch, done, total_loss / max(seen, 1))
        schedule.step()
        if comm.size > 1:  # the epoch's figures over all ranks
            sums = np.array([total_loss, correct, seen], np.float64)
            distributed._allreduce_sum(comm, sums)
            total_loss, correct, seen = sums[0], int(sums[1]), int(sums[2])
        epoch_times.append(time.perf_counter() - start)
        progress.end_epoch(epoch, total_loss / seen, correct / seen, epoch_times[-1])

    if comm.rank != 0:  # the model is rank 0's
        return 0
    correct = _accuracy(model, x_test, ds.y_test, device)
    if args.save:
        try:
            saved = model.save(args.save)
        except OSError as e:
            raise CommandError(f"cannot save to {args.save!r}: {e}") from None
        err.write(f"saved the trained weights to {saved}\n")
    epochs = f"{args.epochs} epoch{'' if args.epochs == 1 else 's'}"
    out.write(
        f"test accuracy: {100 * correct / len(x_test):.2f}% ({correct}/{len(x_test)}), "
        f"{args.model} on {ds.name}, {epochs}, {np.mean(epoch_times):.2f} s/epoch\n"
    )
    return 0


def bench(args):
    """Run `cnnkit bench` (cnnkit.bench.run) with the parsed args; returns 0 (CommandError
    when the device is not there)."""
    _use_device(args.device)
    bench_module = importlib.import_module("cnnkit.bench")  # imported only when asked for
    options = {} if args.threads is None else {"threads": args.threads}
    if args.device != "cpu":
        options["device"] = args.device
    bench_module.run(quick=args.quick, **options)
    return 0


def main(argv=None):
    """Entry point of the `cnnkit` console script and of `python -m cnnkit`.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: sys.argv[1:]).

    Returns
    -------
    int
        The exit status: 0 on success, 1 for an error in the user's input found
        after parsing (reported in one line on stderr), 130 on Ctrl-C.

    Raises
    ------
    SystemExit
        With status 2 and a usage message for arguments argparse refuses (and 0
        for --help).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"train": train, "bench": bench, "classify": classify}[args.command](args)
    except CommandError as e:
        sys.stderr.write(f"cnnkit {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
