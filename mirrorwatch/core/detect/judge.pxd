# The judging mixin stays a plain class; its rule argument is the compiled rule's C struct.

from mirrorwatch.core.detect.compile cimport CRule
