"""STCN network: encoders, memory read, decoder (see model/network.py for the glossary)."""
from model.network import STCN

__all__ = ["STCN"]
