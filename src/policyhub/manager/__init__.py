"""Persistence and queries, one manager per aggregate. The only layer that talks to mongoengine."""
