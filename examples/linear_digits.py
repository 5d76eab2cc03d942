"""Linear classifiers on scikit-learn's bundled 8x8 digits: a softmax classifier and a
multiclass SVM trained by minibatch SGD, the regularisation strength chosen on a
validation set. Needs `pip install 'cnnkit[digits]'`.

    python examples/linear_digits.py
"""

import numpy as np

from cnnkit import classic, data


def main():
    images, labels = data.load_digits()
    X = images.reshape(len(images), -1)
    X_train, X_val, X_test, y_train, y_val, y_test = classic.train_val_test_split(
        X, labels, val_size=0.15, test_size=0.15, seed=0
    )
    # Standardise with the training set's statistics.
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + np.float32(1e-6)
    X_train, X_val, X_test = ((a - mean) / std for a in (X_train, X_val, X_test))

    # The loss and its gradients, as a course's gradient check would see them.
    W = np.zeros((10, X.shape[1]), np.float32)
    loss, dW, db = classic.softmax_loss(W, np.zeros(10, np.float32), X_train, y_train, reg=1e-3)
    print(f"softmax loss at zero weights: {loss:.4f} (log 10 = {np.log(10):.4f})")

    for cls in (classic.LinearSoftmax, classic.LinearSVM):
        best = None
        for reg in (1e-4, 1e-3, 1e-2):
            model = cls(reg=reg, learning_rate=0.05, epochs=30, seed=0).fit(X_train, y_train)
            val = model.score(X_val, y_val)
            print(f"  {cls.__name__} reg={reg:g}: validation accuracy {100 * val:.2f}%")
            if best is None or val > best[0]:
                best = (val, reg, model)
        _, reg, model = best
        print(f"{cls.__name__}: reg={reg:g}, test accuracy {100 * model.score(X_test, y_test):.2f}%")


if __name__ == "__main__":
    main()
