"""Operations commands that ops jobs run from the slim image: topics, indexes, dead letters."""
