"""Graders that decide whether an extracted answer equals the gold one."""
