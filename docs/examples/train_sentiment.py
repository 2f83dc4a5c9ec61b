#!/usr/bin/python3
"""Trains the bundled sentiment example: a Kim-style text CNN on sentences from a small grammar with negation.

Usage: /usr/bin/python3 docs/examples/train_sentiment.py [OUTDIR]   (default: the folder of this script)

Writes, seeded and deterministic on one thread:
  sentiment_cnn.pt          torch.jit.script of the model: forward(ids: int64 [N, T]) -> logits [N, 2]
                            (0 negative, 1 positive); layers embedding, convs.0-3 (filter widths 3-6), fc
  sentiment_vocab.txt       the vocabulary, one token per line: line i is token id i (0 is <pad>)
  sentiment_test.pt         int64 [400, T]: held-out sentences (none of them seen in training)
  sentiment_test_labels.pt  int64 [400]
  sentiment_study.pt        int64 [408, T]: the 8 sentences the study looks at closely ("this is not good",
                            "this is not bad", ..., in the order PROBES lists them), then the 400 held-out ones

The grammar: a subject, a verb, optionally an intensifier, and an adjective of either polarity; negators ("not",
"hardly", "never") flip it, "not ... at all" too; "never fails to <verb>" is positive and "fails to <verb>"
negative; "X but Y" takes Y's polarity. Labels follow these rules exactly, so the task needs negation handled:
a bag of words cannot solve it.
"""
import os
import random
import sys

import torch
from torch import nn

T = 12  # tokens per sentence, padded with id 0 on the right

SUBJECTS = ["this", "it", "the film", "this movie", "the plot", "the acting", "the story", "this book"]
VERBS = ["is", "was", "seems", "looks"]
INTENSIFIERS = ["really", "very", "quite", "so"]
POSITIVE = ["good", "great", "fun", "excellent", "brilliant", "wonderful", "charming", "superb"]
NEGATIVE = ["bad", "awful", "boring", "terrible", "dull", "poor", "bland", "dreadful"]
ACTIONS = ["impress", "amuse", "delight", "entertain"]
PROBES = ["this is not good", "this is not bad", "this is good", "this is bad", "it was hardly fun",
          "the film never fails to amuse", "the plot fails to impress", "it is dull but charming"]


def sentence(rng):
    """One sentence and its label (1 positive, 0 negative)."""
    subject, verb = rng.choice(SUBJECTS), rng.choice(VERBS)
    kind = rng.random()
    if kind < 0.08:
        action = rng.choice(ACTIONS)
        if rng.random() < 0.5:
            return f"{subject} never fails to {action}", 1
        return f"{subject} fails to {action}", 0
    if kind < 0.2:  # contrast: the second adjective decides
        first_positive = rng.random() < 0.5
        a = rng.choice(POSITIVE if first_positive else NEGATIVE)
        b = rng.choice(NEGATIVE if first_positive else POSITIVE)
        return f"{subject} {verb} {a} but {b}", int(not first_positive)
    positive = rng.random() < 0.5
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    words = [subject, verb]
    negated = False
    r = rng.random()
    if r < 0.3:
        words.append("not")
        negated = True
    elif r < 0.4:
        words.append(rng.choice(["hardly", "never"]))
        negated = True
    if rng.random() < 0.35:
        words.append(rng.choice(INTENSIFIERS))
    words.append(adjective)
    if negated and words[2] == "not" and rng.random() < 0.3:
        words.append("at all")
    return " ".join(words), int(positive != negated)


def vocabulary():
    words = ["<pad>"]
    for group in (SUBJECTS, VERBS, INTENSIFIERS, POSITIVE, NEGATIVE, ACTIONS,
                  ["not", "hardly", "never", "fails", "to", "but", "at all"]):
        for phrase in group:
            for w in phrase.split():
                if w not in words:
                    words.append(w)
    return words


def encode(text, index):
    ids = [index[w] for w in text.split()]
    assert len(ids) <= T, text
    return ids + [0] * (T - len(ids))


class TextCnn(nn.Module):
    """Kim (2014): embeddings, filters of widths 3-6, ReLU, 1-max pooling over time, one dense layer."""

    def __init__(self, vocab, dim=16, widths=(3, 4, 5, 6), filters=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, w) for w in widths])
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(filters * len(widths), 2)

    def forward(self, ids):
        x = self.embedding(ids).transpose(1, 2)
        pooled = [self.relu(conv(x)).max(2)[0] for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, 1)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    words = vocabulary()
    index = {w: i for i, w in enumerate(words)}

    seen, train, test = set(PROBES), [], []
    while len(test) < 400:  # held out: distinct sentences, never the probes
        text, label = sentence(rng)
        if text not in seen:
            seen.add(text)
            test.append((text, label))
    while len(train) < 6000:
        text, label = sentence(rng)
        if text not in {t for t, _ in test} and text not in PROBES:
            train.append((text, label))

    def tensors(rows):
        return (torch.tensor([encode(t, index) for t, _ in rows]), torch.tensor([l for _, l in rows]))

    x, y = tensors(train)
    xt, yt = tensors(test)
    model = TextCnn(len(words))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(12):
        model.train()
        perm = torch.randperm(len(x))
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(xt).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: held-out accuracy {accuracy:.3f}")

    model.eval()
    torch.jit.script(model).save(os.path.join(out, "sentiment_cnn.pt"))
    with open(os.path.join(out, "sentiment_vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    torch.save(xt, os.path.join(out, "sentiment_test.pt"))
    torch.save(yt, os.path.join(out, "sentiment_test_labels.pt"))
    probes = torch.tensor([encode(p, index) for p in PROBES])
    torch.save(torch.cat([probes, xt]), os.path.join(out, "sentiment_study.pt"))
    with torch.no_grad():
        probs = model(torch.tensor([encode(p, index) for p in PROBES])).softmax(1)[:, 1]
    for p, q in zip(PROBES, probs.tolist()):
        print(f"P(positive | {p!r}) = {q:.3f}")


if __name__ == "__main__":
    main()
