#!/usr/bin/python3
"""Trains the bundled example: a small CNN on Fashion-MNIST, exported to TorchScript.

Reads Debian's dataset-fashion-mnist files, trains deterministically on CPU, and writes into --out
(default: this folder):
  fashion_cnn.pt                  traced TorchScript model, input [N, 1, 28, 28] in [0, 1], 10 logits
  fashion_test.pt / _labels.pt    the first 512 test images [512, 1, 28, 28] float32 and labels int64
  fashion_train.pt / _labels.pt   the first 1000 training images and labels (for feature selection)
Layer names (as `galvani layers` shows them): features.0..5 (conv, relu, pool, conv, relu, pool),
classifier.0 (flatten), classifier.1 (dense 64), classifier.2 (relu, the penultimate layer), classifier.3.

Usage: /usr/bin/python3 docs/examples/train_fashion.py [--out DIR] [--epochs N]
"""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        magic, = struct.unpack(">I", f.read(4))
        dims = magic & 0xFF
        shape = struct.unpack(">" + "I" * dims, f.read(4 * dims))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def load(split):
    images = read_idx(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x_train, y_train = load("train")
    x_test, y_test = load("t10k")
    model = FashionCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
        model.eval()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, x_test, y_test):.4f} "
              f"({time.time() - start:.0f} s)")
    model.eval()
    os.makedirs(args.out, exist_ok=True)
    traced = torch.jit.trace(model, x_test[:2])
    traced.save(os.path.join(args.out, "fashion_cnn.pt"))
    torch.save(x_test[:512].clone(), os.path.join(args.out, "fashion_test.pt"))
    torch.save(y_test[:512].clone(), os.path.join(args.out, "fashion_test_labels.pt"))
    torch.save(x_train[:1000].clone(), os.path.join(args.out, "fashion_train.pt"))
    torch.save(y_train[:1000].clone(), os.path.join(args.out, "fashion_train_labels.pt"))
    print(f"accuracy on the 512 bundled test images: {accuracy(model, x_test[:512], y_test[:512]):.4f}")


if __name__ == "__main__":
    main()
