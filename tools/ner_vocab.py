"""A deterministic cased WordPiece vocabulary for the tiny NER model.

The `tokenizers` WordPiece trainer breaks ties between equally frequent merges in hash-map
order, so the same corpus gives a slightly different vocabulary in every run. This learner
runs the same algorithm (BPE merges over pre-tokenized words; a symbol inside a word
carries the "##" prefix) with ties broken by the symbols themselves, so the vocabulary
depends only on the corpus.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise

from tokenizers import normalizers, pre_tokenizers
from transformers import BertTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Latin letters with diacritics are in the alphabet even when the corpus never shows them,
# so a real name with e.g. "ő" does not collapse into [UNK].
BASE_ALPHABET = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xC0, 0x250)]


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """Words as the Bert pre-tokenizer splits the cased, unstripped text."""
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def learn_vocab(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> dict[str, int]:
    counts = word_counts(texts)
    ordered = sorted(counts)
    words = [[word[0], *(f"##{c}" for c in word[1:])] for word in ordered]
    freqs = [counts[word] for word in ordered]

    chars = sorted(set(BASE_ALPHABET) | {c for word in ordered for c in word})
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    known = set(tokens)

    pair_counts: Counter[tuple[str, str]] = Counter()
    holders: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for i, symbols in enumerate(words):
        for pair in pairwise(symbols):
            pair_counts[pair] += freqs[i]
            holders[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    while len(tokens) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # stale entry: the count changed after it was pushed
        if -negative < min_frequency:
            break
        merged = pair[0] + pair[1][2:]
        if merged not in known:
            known.add(merged)
            tokens.append(merged)
        changed: set[tuple[str, str]] = set()
        for i in sorted(holders.pop(pair)):
            symbols = words[i]
            for old in pairwise(symbols):
                pair_counts[old] -= freqs[i]
                changed.add(old)
            out, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and (symbols[j], symbols[j + 1]) == pair:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            words[i] = out
            for new in pairwise(out):
                pair_counts[new] += freqs[i]
                holders[new].add(i)
                changed.add(new)
        for key in sorted(changed):
            if pair_counts[key] > 0:
                heapq.heappush(heap, (-pair_counts[key], key))
            else:
                del pair_counts[key]
    return {token: i for i, token in enumerate(tokens)}


def build_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> BertTokenizer:
    """Cased BERT tokenizer (casing is a strong NER signal) over a freshly learned vocabulary."""
    return BertTokenizer(
        vocab=learn_vocab(texts, vocab_size), do_lower_case=False, strip_accents=False,
        model_max_length=max_length,
    )
