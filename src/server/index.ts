export { buildServer } from './build';
export { nimifyPlugin } from './plugin';
