"""uniimb_jax: UniImb imbalanced graph classification in JAX/Flax."""

__version__ = "0.1.0"
