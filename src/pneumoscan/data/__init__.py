"""pneumoscan.data"""
