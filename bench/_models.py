"""Models and documents for the engine benchmark and the GPU tests, made in code (no download).

* a WordPiece tokenizer over a pseudo-word vocabulary (syllable words, plus word pieces, so
  that unknown words split into several tokens as real text does);
* random-weight token-classification models of two real shapes: BERT-base
  (``BertForTokenClassification``, 12 x 768) and Qwen3-0.6B (``Qwen3ForTokenClassification``,
  28 x 1024, grouped-query attention), plus a tiny BERT for quick correctness checks;
* documents of a chosen token-length range made of those words.

The weights are random, so the entities mean nothing; the shapes, and so the cost on the GPU
and in every CPU stage, are those of the real models.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,;:!?'\"()-")
_ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
_CODAS = ["", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "rt", "x"]
SYLLABLES = sorted({o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS})


def build_tokenizer(out_dir: Path, *, vocab_size: int, model_max_length: int, seed: int = 0) -> list[str]:
    """Save a BERT-style WordPiece tokenizer to ``out_dir``; return its whole words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    base = SPECIALS + PUNCT + chars + ["##" + c for c in chars]
    pieces = [p for p in ("##" + s for s in SYLLABLES) if p not in base]
    room = vocab_size - len(base)
    pieces = pieces[: room // 3]
    seen = set(base)
    words: list[str] = []
    while len(words) < room - len(pieces):
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    vocab = {token: i for i, token in enumerate(base + words + pieces)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=model_max_length,
    ).save_pretrained(str(out_dir))
    return words


def _label_maps() -> dict[str, Any]:
    return {"num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)),
            "label2id": {label: i for i, label in enumerate(LABELS)}}


def build_bert(out_dir: Path, *, shape: str, seed: int = 0, dtype: str = "bfloat16") -> list[str]:
    """A random BertForTokenClassification: shape "base" (12 x 768) or "tiny" (2 x 64)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    hidden, layers, heads, vocab = (768, 12, 12, 30522) if shape == "base" else (64, 2, 4, 3000)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = build_tokenizer(out_dir, vocab_size=vocab, model_max_length=512, seed=seed)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, max_position_embeddings=512, **_label_maps())
    torch.manual_seed(seed)
    model = BertForTokenClassification(config)
    # Wide classifier weights spread the logits, so labels (and entities) differ from token to token.
    torch.nn.init.normal_(model.classifier.weight, std=0.5 if shape == "tiny" else 0.05)
    model.to(getattr(torch, dtype)).save_pretrained(str(out_dir))
    return words


def build_qwen3(out_dir: Path, *, seed: int = 0, max_length: int = 8192) -> list[str]:
    """A random Qwen3ForTokenClassification of Qwen3-0.6B's shape (bf16)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForTokenClassification

    out_dir.mkdir(parents=True, exist_ok=True)
    words = build_tokenizer(out_dir, vocab_size=30522, model_max_length=max_length, seed=seed)
    config = Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        rms_norm_eps=1e-6, tie_word_embeddings=True, pad_token_id=0, **_label_maps(),
    )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 0.6 B parameters is much faster on the GPU
        model = Qwen3ForTokenClassification(config).to(torch.bfloat16)  # type: ignore[no-untyped-call,arg-type]
    model.save_pretrained(str(out_dir))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return words


def make_texts(words: list[str], count: int, *, tokens: tuple[int, int], seed: int,
               long_fraction: float = 0.0, long_tokens: tuple[int, int] = (2000, 8000)) -> list[str]:
    """``count`` texts of about ``tokens`` tokens each (a ``long_fraction`` of ``long_tokens``).

    Mostly known words (one token each), some punctuation, some unknown words that split
    into several word pieces, and capitalised words now and then, like running text.
    """
    rng = random.Random(seed)
    texts: list[str] = []
    for index in range(count):
        low, high = long_tokens if rng.random() < long_fraction else tokens
        target = rng.randint(low, high) - 2  # [CLS] and [SEP]
        parts: list[str] = []
        used = 0
        while used < target:
            roll = rng.random()
            if roll < 0.07:
                parts.append(rng.choice(PUNCT[:6]))
                used += 1
            elif roll < 0.13:
                parts.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))))
                used += 3
            else:
                word = rng.choice(words)
                parts.append(word.capitalize() if rng.random() < 0.12 else word)
                used += 1
        texts.append(" ".join(parts) + f" {index}")
    return texts


def model_cost(config: Any) -> dict[str, float]:
    """FLOPs per token of a model: matmul parameters outside the embeddings, and attention.

    Useful FLOPs of a window of L tokens = 2 * params * L + attention * L^2 (the attention
    score and value products; half of them for a causal model).
    """
    hidden = int(config.hidden_size)
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    ffn = int(config.intermediate_size)
    labels = int(config.num_labels)
    gated = getattr(config, "model_type", "") != "bert"
    attention_params = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    ffn_params = hidden * ffn * (3 if gated else 2)
    params = layers * (attention_params + ffn_params) + hidden * labels
    causal = getattr(config, "model_type", "") != "bert"
    attention = 4 * layers * heads * head_dim * (0.5 if causal else 1.0)
    return {"params": float(params), "attention": float(attention)}


def useful_flops(lengths: list[int], cost: dict[str, float]) -> float:
    return float(sum(2 * cost["params"] * n + cost["attention"] * n * n for n in lengths))


def calibrate_outside(model_dir: Path, texts: list[str], *, outside: float = 0.85) -> float:
    """Shift the classifier's "O" bias so that about ``outside`` of the tokens are "O".

    Random weights label nearly every token as some entity; real text is mostly outside any
    entity, and the decoder's and the serializer's work grows with the entities found. So the
    random model is tuned to a realistic entity density. Returns the bias added.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    margins = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=512).to(device)
            logits = model(**enc).logits[0].float()
            margins.append((logits[:, 1:].max(-1).values - logits[:, 0]).cpu())
    shift = float(torch.quantile(torch.cat(margins), outside))
    head = model.classifier if hasattr(model, "classifier") else model.score
    if head.bias is None:
        raise ValueError("the classifier has no bias to shift")
    with torch.no_grad():
        head.bias[0] += shift
    dtype = torch.float32 if "tiny" in model_dir.name else torch.bfloat16
    model.to(dtype).save_pretrained(str(model_dir))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return shift


def train_tiny_tagger(model_dir: Path, *, steps: int = 400, seed: int = 0) -> float:
    """Train the tiny BERT in ``model_dir`` on a made-up tagging rule; return its token accuracy.

    Random weights give near-ties between labels everywhere, which no trained model has: any
    rounding then flips labels. A few hundred steps on a simple rule over token ids (a token
    whose id is a multiple of 11 starts an entity whose type depends on the id; an even token
    right after it continues that entity) make the predictions as confident as a trained NER
    model's, in seconds on a GPU, with no data to download.
    """
    import torch
    from transformers import AutoModelForTokenClassification

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    vocab = int(model.config.vocab_size)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(5, vocab, (64, 128), generator=generator)
        starts = ids % 11 == 0
        kind = (ids // 11) % 4
        labels = torch.zeros_like(ids)
        labels[starts] = 1 + 2 * kind[starts]
        follows = torch.zeros_like(starts)
        follows[:, 1:] = starts[:, :-1] & (ids[:, 1:] % 2 == 0) & ~starts[:, 1:]
        previous_kind = torch.zeros_like(kind)
        previous_kind[:, 1:] = kind[:, :-1]
        labels[follows] = 2 + 2 * previous_kind[follows]
        return ids.to(device), labels.to(device)

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        ids, labels = batch()
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    model.eval()
    ids, labels = batch()
    with torch.inference_mode():
        accuracy = float((model(input_ids=ids).logits.argmax(-1) == labels).float().mean())
    model.save_pretrained(str(model_dir))
    return accuracy
