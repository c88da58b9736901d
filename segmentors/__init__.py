"""MMSegmentation plug-ins of ovdistill."""
