"""pneumoscan.models"""
