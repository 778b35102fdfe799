"""Stage 5: the rationalist supervises an agent's reasoning step by step (METHOD.md, Stage 5).

`settings` holds the search knobs, `roles` the three (four, with a judge) models and their cost meters,
`prompts` the texts each model sees, `heuristics` the step-choice functions (one signature, one
registry), `batch` the calls they ask for and the scheduler that runs many problems in lockstep,
`methods` the whole-problem strategies (guided search, baselines, beam, best-of-N) that
turn one benchmark item into one trace record and the roles each depends on, `pool` the models by role
(`RolesConfig`) loaded once each (`ModelPool`), `solve` one question outside any benchmark, `trace`
the trace record schema, `verify` the step scores of given solutions, and `chat` the search as a chat
model for `rationalyst serve --guided`.
"""
