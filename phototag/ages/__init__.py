"""The age model and the age groups: a distribution over ages 0-100 per face, and what it shows."""
