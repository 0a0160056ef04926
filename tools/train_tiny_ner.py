"""Train the tiny NER model that the project ships, on the CPU (2 threads).

    .venv/bin/python tools/train_tiny_ner.py --output-dir build/tiny-ner-base
    .venv/bin/python tools/train_tiny_ner.py --init-from build/tiny-ner-base --seed 14 ...

Steps: synthetic training texts (ner_synth: training templates and locales only, with
ordinary-word noise) -> a cased WordPiece vocabulary learned from them (ner_vocab) ->
character spans aligned to tokens (IOB2: the token that starts an entity is B-, every later
token inside it, word pieces included, is I-) -> windows of at most 128 tokens -> a small
BertForTokenClassification -> entity-level F1 on the held-out sets -> Hugging Face folder +
MODEL_CARD.md. A step takes roughly 0.2 s on two free cores (the default 2,500 steps: about
10 minutes with data and vocabulary). --init-from continues a
saved model (keeping its vocabulary) on fresh data from another seed; the shipped model was
made in such stages, listed in its MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

# Busy-waiting OpenMP threads make every step ~10x slower when the cores are shared with
# other processes; passive waiting costs nothing measurable on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from ner_eval import evaluate, token_labels
from ner_model_card import write_model_card
from ner_synth import (
    LABELS,
    Example,
    build_examples,
    heldout_examples,
    name_samples,
)
from ner_vocab import build_tokenizer
from transformers import BertConfig, BertForTokenClassification, BertTokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "worker" / "bundled_model" / "tiny-ner"
# 128 tokens: the synthetic paragraphs mostly fit, while any document of a few sentences
# needs several windows, so the worker's long-document windowing is exercised by the demo.
MAX_LENGTH = 128
ID2LABEL = ["O"] + [f"{prefix}-{label}" for label in LABELS for prefix in ("B", "I")]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--steps", type=int, default=2500, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-examples", type=int, default=40_000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--vocab-size", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="continue training this saved model (and keep its tokenizer) on fresh data")
    parser.add_argument("--device", default="cpu", help="cpu (the reference) or e.g. cuda for quick experiments")
    return parser.parse_args(argv)


def windows(ids: list[int], labels: list[int], size: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """Split a long token sequence like the worker does: windows of `size`, `stride` overlap."""
    if len(ids) <= size:
        return [(ids, labels)]
    starts = [*range(0, len(ids) - size, size - stride), len(ids) - size]
    return [(ids[s:s + size], labels[s:s + size]) for s in starts]


def split_pieces(ids: list[int], labels: list[int], vocab: dict[str, int], tokens: list[str],
                 rng: random.Random) -> tuple[list[int], list[int]]:
    """Cut some tokens into single characters (like BPE-dropout).

    Names the model never saw are cut into many short pieces; showing it known words cut the
    same way, with the same labels, teaches it to keep one label across all the pieces."""
    out_ids: list[int] = []
    out_labels: list[int] = []
    for token_id, label in zip(ids, labels, strict=True):
        token = tokens[token_id]
        body = token[2:] if token.startswith("##") else token
        if len(body) < 2 or rng.random() >= 0.3:
            out_ids.append(token_id)
            out_labels.append(label)
            continue
        pieces = [token[: len(token) - len(body) + 1]] + [f"##{c}" for c in body[1:]]
        inside = label if ID2LABEL[label] == "O" else ID2LABEL.index("I-" + ID2LABEL[label][2:])
        out_ids += [vocab[piece] for piece in pieces]
        out_labels += [label] + [inside] * (len(pieces) - 1)
    return out_ids, out_labels


def encode(examples: list[Example], tokenizer: BertTokenizer, seed: int,
           split_rate: float = 0.5) -> tuple[list[tuple[list[int], list[int]]], int]:
    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)  # token text by id
    label2id = {label: i for i, label in enumerate(ID2LABEL)}
    content = MAX_LENGTH - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    batch = tokenizer([e.text for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    features, misaligned = [], 0
    for example, ids, offsets in zip(examples, batch["input_ids"], batch["offset_mapping"], strict=True):
        tags, bad = token_labels(offsets, example.spans)
        misaligned += bad
        label_ids = [label2id[tag] for tag in tags]
        if rng.random() < split_rate:
            ids, label_ids = split_pieces(ids, label_ids, vocab, tokens, rng)
        for window_ids, window_labels in windows(ids, label_ids, content, stride=32):
            features.append(([cls, *window_ids, sep], [-100, *window_labels, -100]))
    return features, misaligned


def length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of shuffled batches of similar length: far less padding, so faster steps."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for first in range(0, len(order) - batch_size + 1, pool):
        chunk = sorted(order[first:first + pool], key=lengths.__getitem__)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def train(model: BertForTokenClassification, features: list[tuple[list[int], list[int]]],
          args: argparse.Namespace, pad_id: int) -> float:
    rng = random.Random(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (args.steps - step) / (args.steps - warmup))),
    )
    batches: list[list[int]] = []
    model.train()
    started, running = time.perf_counter(), 0.0
    for step in range(args.steps):
        if not batches:
            batches = length_bucketed_batches([len(ids) for ids, _ in features], args.batch_size, rng)
        batch = [features[i] for i in batches.pop()]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=args.device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=args.device)
        attention = (input_ids != pad_id).long()
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {running:.4f}  {time.perf_counter() - started:6.1f}s", flush=True)
    model.eval()
    return time.perf_counter() - started


def earlier_commands(init_from: Path | None) -> list[str]:
    """How the starting model was made, from its card, so the new card gives the full recipe."""
    if init_from is None:
        return []
    card = (init_from / "MODEL_CARD.md").read_text(encoding="utf-8")
    prefix = ".venv/bin/python tools/train_tiny_ner.py "
    return [line.removeprefix(prefix) for line in card.splitlines() if line.startswith(prefix)]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=args.device != "cpu")
    began = time.perf_counter()

    examples = build_examples("train", args.train_examples, args.seed, max_sentences=5)
    if args.init_from:
        # Rebuilt from the vocabulary, so the saved tokenizer files are exactly as in a fresh run.
        vocab = BertTokenizer.from_pretrained(args.init_from).get_vocab()
        tokenizer = BertTokenizer(vocab=vocab, do_lower_case=False, strip_accents=False, model_max_length=MAX_LENGTH)
    else:
        # Extra names give the vocabulary more name-like pieces, so unseen names split less.
        vocab_texts = [e.text for e in examples] + name_samples("train", args.train_examples, args.seed + 1)
        tokenizer = build_tokenizer(vocab_texts, args.vocab_size, MAX_LENGTH)
    features, misaligned = encode(examples, tokenizer, args.seed)
    print(f"data and vocabulary ready in {time.perf_counter() - began:.0f}s", flush=True)
    print(f"{len(examples)} texts -> {len(features)} windows; vocab {len(tokenizer)}; "
          f"spans not on token boundaries: {misaligned}", flush=True)

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
        max_position_embeddings=MAX_LENGTH, type_vocab_size=2,
        hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(ID2LABEL)), label2id={label: i for i, label in enumerate(ID2LABEL)},
    )
    if args.init_from:
        model = BertForTokenClassification.from_pretrained(args.init_from)
        config = model.config
    else:
        model = BertForTokenClassification(config)
    model.to(args.device)
    train_seconds = train(model, features, args, tokenizer.pad_token_id)

    model.cpu()
    # Saved before scoring: scoring leaves padding/truncation state in the tokenizer backend.
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    heldout = heldout_examples()
    scores = evaluate(model, tokenizer, heldout)
    unseen = evaluate(model, tokenizer, heldout_examples(unseen_locales=True))
    print("held-out:", {k: round(v, 4) for k, v in scores.items()}, flush=True)
    print("held-out, unseen locales:", {k: round(v, 4) for k, v in unseen.items()}, flush=True)

    facts = vars(args) | {"dropout": config.hidden_dropout_prob,
        "layers": config.num_hidden_layers, "hidden": config.hidden_size,
        "heads": config.num_attention_heads, "intermediate": config.intermediate_size,
        "params": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
        "windows": len(features), "heldout": len(heldout), "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - began, "cpu_seconds": time.process_time(),
    }
    commands = [*earlier_commands(args.init_from), " ".join(argv)]
    facts["schedule"] = (f"{args.steps} AdamW steps, peak learning rate {args.lr} (10 % warm-up, linear "
                         f"decay), data seed {args.seed}")
    if args.init_from:
        facts["schedule"] += ", continuing the model made by the command(s) before the last one below"
    write_model_card(args.output_dir, scores, unseen,
                     facts | {"labels": ID2LABEL, "max_length": MAX_LENGTH, "commands": commands})
    print(f"saved to {args.output_dir} in {time.perf_counter() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
