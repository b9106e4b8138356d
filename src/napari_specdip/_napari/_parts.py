"""Qt parts of the restore widget that napari and magicgui do not provide as needed.

:class:`LayerComboBox` keeps its layer through a rename and stays narrow with a long
layer name; :func:`scroll_content`
lets the dock be shorter than the widget, which then scrolls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from magicgui.widgets import ComboBox
from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QComboBox, QFrame, QScrollArea, QVBoxLayout, QWidget

#: characters a layer combo box is sized for; longer names are cut, whole in its tooltip
LAYER_NAME_CHARACTERS = 18


class LayerComboBox(ComboBox):
    """A combo box of layers that keeps the chosen layer when it is renamed.

    napari calls ``reset_choices`` when a layer is renamed, and magicgui matches
    choices by their text: the renamed choice counts as a new one and the combo
    falls back to its first item (the null entry). This one puts the same layer
    object back while it is still a choice, without a ``changed`` in between (a
    passing None would drop the hints a sample's image set).

    Its width does not follow the names: a microscope file's 60-character name would
    widen the dock until napari's canvas is gone. The chosen name is its tooltip.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        combo = self.native
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(LAYER_NAME_CHARACTERS)
        view = combo.view()
        if view is not None:  # the open list shows the long names' ends too
            view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._hint = str(kwargs.get("tooltip") or "")
        self.changed.connect(self._name_tip)
        self._name_tip(self.value)

    def _name_tip(self, value: Any) -> None:
        name = getattr(value, "name", None)
        hint = getattr(self, "_hint", "")  # not yet set while magicgui builds the combo
        self.native.setToolTip(f"{name}\n\n{hint}" if name and hint else str(name or hint))

    def reset_choices(self, *_: Any) -> None:
        before = self.value
        with self.changed.blocked():
            super().reset_choices()
            if (before is not None and self.value is not before
                    and any(choice is before for choice in self.choices)):
                self.value = before
        if self.value is not before:
            self.changed.emit(self.value)
        self._name_tip(self.value)  # a rename keeps the layer: its tooltip follows


class _VerticalScroll(QScrollArea):
    """Scrolls its content up and down only: as wide as the content needs (with room for
    the scroll bar, so that nothing is cut when it shows), as short as the dock allows."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setWidget(content)

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:  # Qt API
        # QScrollArea does not pass on its content's new size hints: shown advanced options
        # widened the content but not the dock, which then cut off its right edge
        if (event is not None and watched is self.widget()
                and event.type() == QEvent.Type.LayoutRequest):
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def _width(self, content: QSize) -> int:
        bar = self.verticalScrollBar()
        return content.width() + (bar.sizeHint().width() if bar is not None else 0) \
            + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # Qt API name
        content = self.widget()
        short = super().minimumSizeHint()
        if content is None:
            return short
        return QSize(self._width(content.minimumSizeHint()), short.height())

    def sizeHint(self) -> QSize:  # Qt API name
        # the whole content when there is room (QScrollArea's own hint is capped)
        content = self.widget()
        if content is None:
            return super().sizeHint()
        hint = content.sizeHint()
        return QSize(self._width(hint), hint.height() + 2 * self.frameWidth())


def scroll_content(widget: QWidget, *, pinned: Sequence[QWidget] = ()) -> QScrollArea:
    """Move what ``widget``'s layout holds into a vertically scrolling area inside it,
    and return that area; the ``pinned`` widgets stay below it, always in view (the
    Run buttons: a short dock hid them under the options).

    napari docks a magicgui container's ``native`` and sizes the window for its minimum
    height: a tall widget made the window taller than common screens. magicgui's own
    ``scrollable`` cannot serve, as its ``native`` is then the content, which napari
    would take out of the scroll area. Call this once all the widgets are added: later
    magicgui insertions would go to ``widget``'s layout, outside the scroll area.
    """
    layout = widget.layout()
    assert isinstance(layout, QVBoxLayout)
    content = QWidget()
    moved = QVBoxLayout(content)
    moved.setContentsMargins(layout.contentsMargins())
    moved.setSpacing(layout.spacing())
    while layout.count():
        item = layout.itemAt(0)
        child = item.widget() if item is not None else None
        if child is not None:
            # removeWidget deletes the old item: a widget reports its size changes only
            # to the first item made for it, and while that lives the new item's cached
            # heights go stale (a grown label squeezed the rows beside it)
            layout.removeWidget(child)
            moved.addWidget(child)
        else:
            taken = layout.takeAt(0)
            if taken is not None:
                moved.addItem(taken)
    layout.setContentsMargins(0, 0, 0, 0)
    scroll = _VerticalScroll(content)
    layout.addWidget(scroll)
    if pinned:
        footer = QWidget()
        below = QVBoxLayout(footer)
        margins = moved.contentsMargins()
        below.setContentsMargins(margins.left(), 4, margins.right(), margins.bottom())
        for child in pinned:
            moved.removeWidget(child)
            below.addWidget(child)
        layout.addWidget(footer)
    return scroll
