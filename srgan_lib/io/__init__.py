"""Files in and out: images (8 and 16 bit), atomic writes, JSON, and weight files loaded safely."""
