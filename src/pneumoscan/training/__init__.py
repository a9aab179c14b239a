"""pneumoscan.training"""
