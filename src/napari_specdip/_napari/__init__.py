"""The napari plugin: restore widget, live charts, sample data.

Everything here may import napari, Qt and magicgui; torch and matplotlib are
imported only when a widget is built, so napari starts fast.
"""
