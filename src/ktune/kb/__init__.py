"""Stage 0, the knowledge base: storage, importers, attribute schema, acquire_knowledge, entity linking."""

from ktune.kb.base import Knowledge, KnowledgeBase
from ktune.kb.linker import EntityLinker, Link, normalize
from ktune.kb.schema import Attribute, Schema

__all__ = ["Attribute", "EntityLinker", "Knowledge", "KnowledgeBase", "Link", "Schema", "normalize"]
