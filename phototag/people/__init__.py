"""People: faces grouped into persons, their birth dates, and the user's decisions about them."""
