"""The words: Speech Commands' ten commands and 35 words, and the two classes
that are not words. No imports: every room, the live recognizer included, can
name a command without loading the dataset code."""

COMMANDS10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The 35 words of Speech Commands v0.02 (v0.01 has the first 30).
WORDS35 = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
           "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
           "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero")
SILENCE, UNKNOWN = "_silence_", "_unknown_"  # background noise alone; any word that is no command
FILLERS = (SILENCE, UNKNOWN)
