export * from './schema.js';
export * from './frames.js';
export * from './shape.js';
