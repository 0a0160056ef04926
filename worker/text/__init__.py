"""Text to entities: tokenization into model windows and decoding of entity spans.

``tokenize`` turns documents into token windows with exact character offsets; ``decode`` turns
the engine's per-token scores back into entities whose ``start``/``end`` index the original
text. Pure CPU code, vectorised with numpy; see docs/decoding.md for the rules.
"""
