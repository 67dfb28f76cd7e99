"""The schema's revisions (Alembic): ``env.py`` runs them, ``versions/`` holds one file each.

Not imported by the store: ``_migrate`` hands this folder to Alembic, which loads the files.
"""
