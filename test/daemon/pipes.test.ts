import { describe, expect, it } from 'vitest';
import { OutputBudget } from '../../src/run/pipes.js';

describe('OutputBudget', () => {
  it('shares one cap between stdout and stderr and reports truncation', () => {
    const budget = new OutputBudget(10);
    expect(budget.take(Buffer.from('123456'))?.toString()).toBe('123456');
    expect(budget.take(Buffer.from('abcdef'))?.toString()).toBe('abcd');
    expect(budget.truncated).toBe(true);
    expect(budget.take(Buffer.from('z'))).toBeUndefined();
  });
});
