"""Models: loading encoders and tokenizers, classifier heads, freezing."""
