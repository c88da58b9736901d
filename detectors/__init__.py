"""Detectron2 plug-ins of ovdistill."""
