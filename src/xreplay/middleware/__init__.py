"""Typed middleware: ordered hooks around a buffer's push, sample, update, delete and clear."""

from xreplay.middleware.pipeline import ACTIONS, Hook, Middleware, compose, hook_for, run_pipeline

__all__ = ["ACTIONS", "Hook", "Middleware", "compose", "hook_for", "run_pipeline"]
