"""`make up`: the native stack — what runs, in what order, and how it is supervised."""
