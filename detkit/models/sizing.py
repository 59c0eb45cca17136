"""Parts that size themselves from the shapes of what feeds them (``backbone.output_shape()``).

A neck or head whose layers depend on its input channels takes ``in_shapes`` (level name ->
:class:`~detkit.structures.ShapeSpec`), or a per-level ``in_channels``. Given None, the module is
built later, when its detector calls :meth:`SizedByInputs.bind_in_shapes` with the shapes of the
part before it (the backbone's ``output_shape()`` for a neck, the neck's for a head): a config
that says the backbone's depth once then builds for ResNet-18 and ResNet-50 alike. Given, the
shapes are checked against that part at construction, with an error naming both; nothing waits
for the first forward to fail.

:func:`bind_in_shapes` is what a detector calls on each part (parts without the method are left
as they are); :func:`output_shape_of` reads a part's shapes when it has ``output_shape()``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from detkit.structures import ShapeSpec, format_shapes

__all__ = ["SizedByInputs", "bind_in_shapes", "output_shape_of"]


def output_shape_of(module: nn.Module | None) -> dict[str, ShapeSpec] | None:
    """``module.output_shape()``, or None for a part that does not report one (e.g. ``nn.Identity``)."""
    method = getattr(module, "output_shape", None)
    return None if method is None else dict(method())


def bind_in_shapes(module: nn.Module, shapes: Mapping[str, ShapeSpec] | None, source: str) -> None:
    """Size ``module`` from ``shapes`` (or check the shapes it was given against them).

    Args:
        module: a neck or head; one without ``bind_in_shapes`` is left alone.
        shapes: the output shapes of the part that feeds it; None when that part reports none
            (then ``module`` must have been given its shapes).
        source: the feeding part's name for the messages (``"backbone"``, ``"neck"``).

    Raises:
        ValueError: the shapes ``module`` was given differ from ``shapes`` (both named), or it was
            given none and ``source`` reports none.
    """
    method = getattr(module, "bind_in_shapes", None)
    if method is None:
        return
    if shapes is None:
        if not getattr(module, "is_sized", True):
            raise ValueError(
                f"{type(module).__name__} was given no input shapes and the {source} has no output_shape(); "
                "pass in_shapes (or in_channels)"
            )
        return
    method(shapes, source)


class SizedByInputs:
    """Mixin of an ``nn.Module`` built from ``in_shapes``, now or when :meth:`bind_in_shapes` comes.

    A subclass calls :meth:`_init_in_shapes` at the end of its ``__init__`` and implements
    :meth:`_build` (create the layers for the given shapes; it must set ``self.in_shapes``). It may
    override :meth:`_select_in_shapes` to take a subset of the offered levels (an FPN's
    ``in_levels``).

    Attributes:
        in_shapes: the shapes of the input levels it was built for, None until it is built.
    """

    in_shapes: dict[str, ShapeSpec] | None

    @property
    def is_sized(self) -> bool:
        """Whether the layers exist (``in_shapes`` known)."""
        return self.in_shapes is not None

    def _init_in_shapes(self, in_shapes: Mapping[str, ShapeSpec] | None) -> None:
        self.in_shapes = None
        if in_shapes is not None:
            self._build(self._select_in_shapes(in_shapes, "in_shapes"))

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        raise NotImplementedError

    def _select_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str) -> dict[str, ShapeSpec]:
        """The levels of ``shapes`` this module reads (all of them by default)."""
        return dict(shapes)

    def bind_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str = "backbone") -> None:
        """Build the layers from ``shapes``, or check the ``in_shapes`` given at construction.

        Args:
            shapes: output shapes of the part feeding this one.
            source: that part's name, for the messages.

        Raises:
            ValueError: ``in_shapes`` was given and differs from ``shapes`` on a level it reads.
        """
        if self.in_shapes is None:
            self._build(self._select_in_shapes(shapes, source))
            return
        differ = [name for name, spec in self.in_shapes.items() if shapes.get(name) != spec]
        if differ:
            raise ValueError(
                f"{type(self).__name__}: in_shapes {format_shapes(self.in_shapes)} differ from the {source}'s "
                f"output_shape() {format_shapes(shapes)} at {differ}; leave in_shapes out to size it from the {source}"
            )

    def _require_sized(self) -> None:
        if self.in_shapes is None:
            raise RuntimeError(
                f"{type(self).__name__} was built without in_shapes and has no layers yet: pass in_shapes, or "
                "let its detector size it (from backbone.output_shape()), or call bind_in_shapes(shapes)"
            )
