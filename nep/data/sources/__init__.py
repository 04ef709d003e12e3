"""Commit record sources for the ingest stage, one module each (git, files, hub), behind the
interface and registry of nep.data.sources.base."""
