"""pneumoscan.explain"""
