"""phototag: tag family photos with the age group of every person in them."""

__version__ = "0.1.0"
