"""The course's first network: an MLP that learns XOR.

2 inputs -> 20 tanh units -> 1 output, mean squared error, plain full-batch SGD,
written with cnnkit's Torch7-style modules (explicit forward and backward).

    python examples/xor_mlp.py
"""

import sys

import numpy as np

import cnnkit
from cnnkit import nn, optim


def main():
    cnnkit.manual_seed(0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)

    model = nn.Sequential(nn.Linear(2, 20), nn.Tanh(), nn.Linear(20, 1))
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=0.1)

    for epoch in range(1, 1001):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        if epoch % 200 == 0:
            print(f"epoch {epoch:4d}  loss {loss:.5f}")

    out = model(x)
    predicted = (out > 0.5).astype(np.float32)
    for xi, oi, pi in zip(x, out[:, 0], predicted[:, 0]):
        print(f"{int(xi[0])} xor {int(xi[1])} -> {oi:+.3f} -> {int(pi)}")
    correct = int(np.sum(predicted == y))
    print(f"{correct}/4 points classified correctly")
    return 0 if correct == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
