"""The LLM ranker: prompt, reply validation, the chat client, audit and news."""
