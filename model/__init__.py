"""STCN network: encoders, memory read, decoder (the glossary is in `model.network`)."""
from model.network import STCN

__all__ = ["STCN"]
