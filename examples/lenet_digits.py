"""LeNet-5 on scikit-learn's bundled 8x8 digits, written out with the module API
(the same job as `cnnkit train`, step by step). Needs `pip install 'cnnkit[digits]'`.

    python examples/lenet_digits.py [EPOCHS]
"""

import sys
import time

import numpy as np

import cnnkit
from cnnkit import data, models, nn, optim


def main(epochs=15):
    cnnkit.manual_seed(0)
    ds = data.load_dataset("digits")  # 1438 train / 359 test images, (N, 1, 8, 8) in [0, 1]
    mean, std = ds.x_train.mean(), ds.x_train.std()
    x_train, x_test = (ds.x_train - mean) / std, (ds.x_test - mean) / std

    # Padding 2 keeps the 8x8 maps at 8x8 through each 5x5 convolution.
    model = models.LeNet5(num_classes=10, in_channels=1, input_size=8, padding=2)
    print(cnnkit.summary(model, (1, 8, 8)))

    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = data.DataLoader((x_train, ds.y_train), batch_size=32, shuffle=True, seed=0)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            total += criterion(model(xb), yb) * len(xb)
            model.backward(criterion.backward())
            optimizer.step()
        print(f"epoch {epoch:2d}  loss {total / len(x_train):.4f}  {time.perf_counter() - start:.2f} s")

    model.eval()
    predicted = np.argmax(model(x_test), axis=1)
    accuracy = np.mean(predicted == ds.y_test)
    print(f"test accuracy: {100 * accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
