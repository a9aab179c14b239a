"""pneumoscan.inference"""
