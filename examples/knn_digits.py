"""k-nearest neighbours on scikit-learn's bundled 8x8 digits, the course's way: choose
k (and the distance) by 5-fold cross-validation on the training set, then measure the
chosen model once on the held-out test set. Needs `pip install 'cnnkit[digits]'`.

    python examples/knn_digits.py
"""

import time

from cnnkit import classic, data


def main():
    images, labels = data.load_digits()
    X = images.reshape(len(images), -1)  # (1797, 64) float32 in [0, 1]
    X_train, X_val, X_test, y_train, y_val, y_test = classic.train_val_test_split(
        X, labels, val_size=0, test_size=0.2, seed=0
    )
    print(f"{len(X_train)} training / {len(X_test)} test images")

    start = time.perf_counter()
    results = {}
    for metric in ("l1", "l2"):
        for k in (1, 3, 5, 7, 9):
            scores = classic.cross_val_score(classic.KNearestNeighbors(k, metric), X_train, y_train, folds=5)
            results[metric, k] = scores.mean()
            print(f"  {metric} k={k}: 5-fold accuracy {100 * scores.mean():.2f}% (+/- {100 * scores.std():.2f})")
    metric, k = max(results, key=results.get)
    print(f"chosen: {metric}, k={k} ({time.perf_counter() - start:.2f} s of cross-validation)")

    model = classic.KNearestNeighbors(n_neighbors=k, metric=metric).fit(X_train, y_train)
    print(f"test accuracy: {100 * model.score(X_test, y_test):.2f}%")


if __name__ == "__main__":
    main()
