"""``ner-worker serve``: annotate documents over HTTP (``POST /v1/annotate``), batched across requests."""
