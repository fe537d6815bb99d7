"""``omnirelay eval``: measure the compound modes against their plain base model over HTTP, through the official
openai SDK, so the same command works against the bundled local model or any configured upstream.

``eval heavy`` compares ``heavy:M`` with one sample of ``M`` on generated arithmetic word problems;
``eval deepsearch`` compares ``deepsearch:M`` with single-shot retrieval on a generated fictional corpus.
"""
