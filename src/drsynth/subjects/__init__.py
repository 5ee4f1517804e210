"""Subjects: the things a scene is about (procedural breeds, vehicles, imported models)."""

from drsynth.subjects.base import Part, Pose, Subject, SurfaceMaterial, parts_bounds

__all__ = ["Part", "Pose", "Subject", "SurfaceMaterial", "parts_bounds"]
