"""k-means on scikit-learn's bundled 8x8 digits: cluster the images without their
labels (k-means++ seeding, best of 5 runs), then see how well each cluster's majority
label names the digits. Needs `pip install 'cnnkit[digits]'`.

    python examples/kmeans_digits.py [K]
"""

import sys
import time

import numpy as np

from cnnkit import classic, data


def main(k=10):
    images, labels = data.load_digits()
    X = images.reshape(len(images), -1)
    start = time.perf_counter()
    model = classic.KMeans(n_clusters=k, n_init=5, seed=0).fit(X)
    print(f"k={k}: inertia {model.inertia_:.2f} after {model.n_iter_} iterations "
          f"({time.perf_counter() - start:.2f} s)")
    agree = 0
    for c in range(k):
        members = labels[model.labels_ == c]
        digit = np.bincount(members).argmax()
        agree += int(np.sum(members == digit))
        print(f"  cluster {c}: {len(members):4d} images, mostly {digit} ({100 * np.mean(members == digit):.0f}%)")
    print(f"purity: {100 * agree / len(X):.2f}%")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
