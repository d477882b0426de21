"""Demo content: the bundled Adult data, a generated lending benchmark and baseline models.

Pure functions with no Django imports; the seeding management command calls them.
"""
