"""pneumoscan.service"""
