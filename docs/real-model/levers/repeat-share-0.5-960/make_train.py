"""How the training set of this lever run was built (2026-12-07, before `split.repeat_share` existed).

Run in a clone of the preset's run, after `dvc repro split` (data/split/train.jsonl is the preset's
seeded 960), from the repository root: `python docs/real-model/levers/repeat-share-0.5-960/make_train.py`.
It keeps the preset sample's examples that repeat their history, adds more of them from the rest of
the training side until there are 480, adds 480 of the sample's other examples, shuffles, and
rewrites data/split/train.jsonl; train_ids.txt beside this file lists the result.
"""

import json
import random

from nep.evaluate.zed import delta_chr_f
from nep.predictors.propagate import propagate

FIRST_TEST_TIMESTAMP = 1578268800  # the time split's first test transition (into 3.11)
HALF = 480


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def repeats(example):
    # "> 0.5" here, ">= 0.5" in nep.data.split.repeats_history (written later): the same 936 training
    # examples either way, since none scores exactly 0.5
    guess = propagate(example["original"], example["current"])
    return guess.rule != "identity" and delta_chr_f(example["current"], example["next"], guess.text).score > 0.5


train_side = [e for e in read("data/process/examples.jsonl") if e["timestamp"] < FIRST_TEST_TIMESTAMP]
sample = read("data/split/train.jsonl")
in_sample = {e["id"] for e in sample}
repeating = [e for e in sample if repeats(e)]
others = [e for e in sample if not repeats(e)]
rng = random.Random(0)
more = [e for e in train_side if e["id"] not in in_sample and repeats(e)]
rng.shuffle(more)
chosen = repeating + more[: HALF - len(repeating)] + others[:HALF]
rng.shuffle(chosen)
print(f"the sample's repeating examples: {len(repeating)}, others: {len(others)}; written: {len(chosen)}")
with open("data/split/train.jsonl", "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in chosen)
