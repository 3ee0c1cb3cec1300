"""Typed middleware: ordered hooks around a buffer's push, sample, update, delete and clear."""

from xreplay.middleware.pipeline import ACTIONS, Middleware, StringDispatch, compose, hook_for, run_pipeline

__all__ = ["ACTIONS", "Middleware", "StringDispatch", "compose", "hook_for", "run_pipeline"]
