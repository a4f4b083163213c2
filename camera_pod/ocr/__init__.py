"""Text recognition on crops (licence plates): an offline RapidOCR engine and the rules that normalise its reads."""
