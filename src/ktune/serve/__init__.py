"""Stage 5, serving: the knowledge-tuned QA pipeline over HTTP, every answer with its provenance."""
