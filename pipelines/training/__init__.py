"""Training: arguments, the Trainer subclass, a card's training run."""
