"""pneumoscan.export"""
