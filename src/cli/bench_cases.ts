// What `codejail bench` runs besides print(1) and 'a = 17': a grader as Open edX courses write
// them, a checker of about forty lines that imports math and random, defines its functions and
// leaves its verdict in the globals, run with safeExec as a grading service would.

/** The checker: grades a numeric answer against a formula, at random sample points. */
export const GRADER_CODE = `
import math
import random


def evaluate(expression, variables):
    """The student's formula at one point, or None when it cannot be evaluated."""
    names = {"sin": math.sin, "cos": math.cos, "sqrt": math.sqrt, "pi": math.pi, "e": math.e}
    names.update(variables)
    try:
        return float(eval(expression, {"__builtins__": {}}, names))
    except Exception:
        return None


def close_enough(got, wanted, tolerance):
    if got is None or math.isnan(got):
        return False
    if wanted == 0:
        return abs(got) <= tolerance
    return abs(got - wanted) <= tolerance * abs(wanted)


rng = random.Random(seed)
points = []
for _ in range(samples):
    x = rng.uniform(-3.0, 3.0)
    y = rng.uniform(0.5, 2.0)
    points.append({"x": x, "y": y})

passed = 0
for point in points:
    wanted = evaluate(expected, point)
    got = evaluate(submission, point)
    if close_enough(got, wanted, tolerance):
        passed += 1

score = passed / len(points)
correct = passed == len(points)
message = "%d of %d sample points agree" % (passed, len(points))
del point, wanted, got, x, y
`;

/** The globals the checker is given: an equivalent form of the expected formula. */
export function graderGlobals(): Record<string, unknown> {
  return {
    expected: 'sin(x)**2 + cos(x)**2 + x*y',
    submission: '1 + y*x',
    tolerance: 1e-9,
    samples: 20,
    seed: 7,
  };
}

/** Why the checker's globals are not what it must leave, or undefined when they are. */
export function graderProblem(globals: Record<string, unknown>): string | undefined {
  if (globals.correct !== true || globals.score !== 1 || globals.message !== '20 of 20 sample points agree') {
    return `the grader returned ${JSON.stringify({ correct: globals.correct, score: globals.score, message: globals.message })}`;
  }
  if (!Array.isArray(globals.points) || globals.points.length !== 20) return 'the grader returned no sample points';
  return undefined;
}
