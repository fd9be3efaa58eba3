"""Vector index backends: LanceDB (embedded default) and Weaviate."""
